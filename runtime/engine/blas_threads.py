"""numpy's BLAS on one thread in a serving process: its idle threads spin on the cores others need.

The service's BLAS calls are small (a frame's descriptor against the gallery, its regions
against it) and gain nothing from a second thread. But after each call OpenBLAS's worker threads
busy-wait for more work, on the cores that the next ONNX Runtime run and the verification's faiss
(OpenMP) threads are waiting for, and a parallel region waits for its slowest thread. Measured on
2 cores (mcv-paintings' bundle at short side 448, unary verified calls, eight frames a run): with
two BLAS threads the first ratio matches of a verification took 20-24 ms each instead of 0.7 on
about half the frames, and a verification of a synthetic camera frame 44-119 ms; with one, no
match took more than 2 ms and the verification 26-29 ms.
"""

from __future__ import annotations

import threadpoolctl


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process (numpy's OpenBLAS) to one thread, for good.

    Not OpenMP: faiss's threads are set per call (``omp_threads``)."""
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
