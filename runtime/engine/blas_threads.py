"""numpy's BLAS on one thread in a serving process: its idle threads spin on the cores others need.

The service's BLAS calls are small (a frame's descriptor against the gallery, its regions
against it) and gain nothing from a second thread. But after each call OpenBLAS's worker threads
busy-wait for more work, on the cores that the next ONNX Runtime run and the verification's faiss
(OpenMP) threads are waiting for, and a parallel region waits for its slowest thread. Measured on
2 cores (mcv-paintings' bundle at short side 448, unary verified calls, eight frames a run): with
two BLAS threads the first ratio matches of a verification took 20-24 ms each instead of 0.7 on
about half the frames, and a verification of a synthetic camera frame 44-119 ms; with one, no
match took more than 2 ms and the verification 26-29 ms.

Only BLAS libraries with workers of their own (``pthreads``: numpy's and OpenCV's OpenBLAS) are
limited. faiss's OpenBLAS is built on OpenMP: limiting it would set the OpenMP runtime that faiss's
own loops share to one thread (the fits of a verification then took 8.4 ms instead of 5.5).
"""

from __future__ import annotations

import threadpoolctl


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process that runs its own worker threads to one
    thread, for good. OpenMP is left as it is: faiss's threads are set per call (``omp_threads``)."""
    threadpoolctl.ThreadpoolController().select(threading_layer="pthreads").limit(limits=1)
