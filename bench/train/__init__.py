"""Training one cell, a (combination, seed) pair: the step loop and its state (``loop``),
its checkpoint (``checkpoint``) and its data-parallel form over torchrun processes
(``distributed``). Knows nothing of run folders beyond the checkpoint path it is given."""
