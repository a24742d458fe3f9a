rm "$LAB/merged/var-log.txt"
