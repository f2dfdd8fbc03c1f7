#!/bin/busybox sh
# /init of the boot test's initramfs (tests/boot/kernel.py). A Pi needs none: its kernel has
# these drivers. Here it loads the modules listed in /modules/load, finds the root named by the
# image's own cmdline.txt (root=PARTUUID=<disk id>-<partition>, as Raspberry Pi OS writes it),
# mounts it read-only as the Pi's kernel would and hands over to the image's init (systemd).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "initramfs: $*; powering off" >/dev/console
    sleep 2
    poweroff -f
}

for module in $(cat /modules/load); do
    insmod "/modules/$module.ko" || echo "initramfs: insmod $module failed" >/dev/console
done

root=
rootfstype=ext4
init=/sbin/init
nfsroot=
for word in $(cat /proc/cmdline); do
    case "$word" in
        root=*) root=${word#root=} ;;
        rootfstype=*) rootfstype=${word#rootfstype=} ;;
        init=*) init=${word#init=} ;;
        nfsroot=*) nfsroot=${word#nfsroot=} ;;
    esac
done

# root=/dev/nfs nfsroot=<server>:<path>,v3,tcp ro ip=dhcp: what a Pi's initramfs (initramfs-tools:
# klibc's ipconfig and nfsmount) does for a diskless node (departures 7): the address by DHCP on eth0,
# then the root over NFSv3, read-only, without locking. Like it, this asks again until the server answers.
nfs_root() {
    cat >/bin/dhcp-lease <<'SCRIPT'
#!/bin/busybox sh
case "$1" in
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        [ -n "$router" ] && route add default gw "${router%% *}" dev "$interface"
        echo "$ip" >/run-ip ;;
esac
SCRIPT
    chmod 0755 /bin/dhcp-lease
    ifconfig lo 127.0.0.1 up
    ifconfig eth0 up || fail "no eth0"
    until udhcpc -i eth0 -n -q -t 10 -T 2 -s /bin/dhcp-lease; do
        echo "initramfs: no DHCP answer on eth0; asking again" >/dev/console
        sleep 3
    done
    source=${nfsroot%%,*}
    server=${source%%:*}
    options=ro,nolock,addr=$server
    for option in $(echo "${nfsroot#"$source"}" | tr , ' '); do
        case "$option" in
            v3) options=$options,vers=3 ;;
            tcp|udp) options=$options,proto=$option ;;
            *) options=$options,$option ;;
        esac
    done
    until mount -t nfs -o "$options" "$source" /root; do
        echo "initramfs: $source does not mount; trying again" >/dev/console
        sleep 5
    done
    echo "initramfs: root $source over NFS ($options; address $(cat /run-ip) by DHCP); starting $init" >/dev/console
    mount --move /dev /root/dev
    umount /proc /sys
    exec switch_root /root "$init"
}
[ "$root" = /dev/nfs ] && nfs_root

find_root() {
    case "$root" in
        PARTUUID=*)
            want=${root#PARTUUID=}
            disk_id=${want%-*}
            number=${want##*-}
            number=${number#0}
            for disk in /sys/block/vd*; do
                [ -e "$disk" ] || continue
                name=${disk##*/}
                # The MBR disk identifier: 4 bytes at offset 440, little-endian.
                id=$(od -An -tx4 -j440 -N4 "/dev/$name" | tr -d ' \n')
                if [ "$id" = "$disk_id" ] && [ -b "/dev/$name$number" ]; then
                    echo "/dev/$name$number"
                    return
                fi
            done ;;
        /dev/*) [ -b "$root" ] && echo "$root" ;;
    esac
}

device=
for _ in $(seq 300); do
    device=$(find_root)
    [ -n "$device" ] && break
    sleep 0.1
done
[ -n "$device" ] || fail "no disk carries root=$root"
mount -t "$rootfstype" -o ro "$device" /root || fail "cannot mount $device ($rootfstype)"
[ -x "/root$init" ] || [ -L "/root$init" ] || fail "the root on $device has no $init"
echo "initramfs: root $root is $device; starting $init" >/dev/console
mount --move /dev /root/dev
umount /proc /sys
exec switch_root /root "$init"
