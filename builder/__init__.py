"""clusterbake: bake ready-to-flash Raspberry Pi OS images for a Slurm home lab."""

__version__ = "0.1.0"
