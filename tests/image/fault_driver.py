"""One build driven through the engine, with a fault injected at a named stage (see test_faults.py).

usage: fault_driver.py BASE_IMAGE OUT_DIR APT_CACHE STAGE ACTION
ACTION is `raise` (an exception), or SIGINT, SIGTERM or SIGKILL sent by the process to itself.
STAGE is one of the engine's checkpoints, or `chroot-busy` (inside the chroot, with a process
left running in it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from builder.errors import ClusterbakeError
from builder.image import atomic_output, open_image, set_checkpoint_hook
from builder.process.signals import interruptible


def main(argv: list[str]) -> int:
    base, out, apt_cache, stage, action = Path(argv[1]), Path(argv[2]), Path(argv[3]), argv[4], argv[5]

    def hook(reached: str) -> None:
        if reached != stage:
            return
        print(f"reached {stage}", flush=True)
        if action == "raise":
            raise RuntimeError(f"fault injected at {stage}")
        os.kill(os.getpid(), getattr(signal, action))
        time.sleep(30)  # the signal's handler raises Interrupted here (SIGKILL: the process just ends)

    set_checkpoint_hook(hook)
    try:
        with interruptible(), atomic_output(out / "node01.img") as partial:
            subprocess.run(["cp", "--sparse=always", base, partial], check=True)
            with open_image(partial) as img:
                img.write_file("/etc/hostname", b"node01\n", mode=0o644)
                with img.chroot(apt_cache=apt_cache) as chroot:
                    chroot.run(["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
                    hook("chroot-busy")
                    (img.root / "boot/firmware/firstrun.txt").write_text("one\n")
                    (img.root / "boot/firmware/second.txt").write_text("two\n")
                img.check()
    except ClusterbakeError as exc:
        print(f"clusterbake: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print("built", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
