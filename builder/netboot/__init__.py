"""Diskless compute nodes (issue 26): what the file server serves them, made from the compute role's image.

`layout.py` says where everything lives on the file server, `boot_files.py` what each node's TFTP
folder holds, `shared_root.py` what the one read-only root gets for a diskless boot, `server.py` the
file server's dnsmasq and NFS exports, and `served_tree.py` puts them together (`clusterbake netboot`).
"""
