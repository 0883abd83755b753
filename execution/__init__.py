"""Where the forward passes run, apart from request handling: the compiled pass (``forward``), the
in-worker batch queue (``batching``), the model executor that pools every worker's rows on an
accelerator (``executor``, its ``client`` and their ``protocol``), the choice between them
(``placement``) and the numeric runtime of a process that runs passes (``runtime``).

Nothing here imports a numeric backend at import time: the HTTP workers of the executor placement
import this package and never start JAX or CUDA."""
