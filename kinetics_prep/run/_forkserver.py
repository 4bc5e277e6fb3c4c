"""Imported first by the pool's forkserver (and only there): SIGTERM to the whole process group
(SLURM's way) must not end the forkserver before its workers, which would SIGKILL them (their
death signal) before they clean their clips up. The run's main process stops it afterwards."""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
