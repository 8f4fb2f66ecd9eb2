"""OpenMP's barrier wait for the training scripts; import it before torch, whose OpenMP runtime reads it on load.

OpenMP threads wait at a barrier by spinning briefly (10,000 turns, microseconds), then sleep. libgomp's default
spins 300,000: on a shared CPU, threads spinning while a descheduled sibling held them up made forwards up to 10x
slower. Not spinning at all (OMP_WAIT_POLICY=PASSIVE) makes a rollout 35% slower: each of a decode step's thousands
of small ops has to wake the threads. A value set in the environment wins.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "10000")
