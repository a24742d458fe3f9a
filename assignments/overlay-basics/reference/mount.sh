mount -t overlay overlay -o lowerdir="$LAB/lower",upperdir="$LAB/upper",workdir="$LAB/work" "$LAB/merged"
