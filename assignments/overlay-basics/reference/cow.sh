echo 'modified by container' > "$LAB/merged/etc/app.conf"
