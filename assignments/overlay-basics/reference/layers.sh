mount -t overlay overlay -o lowerdir="$LAB/l3:$LAB/l2:$LAB/l1",upperdir="$LAB/upper",workdir="$LAB/work" "$LAB/merged"
