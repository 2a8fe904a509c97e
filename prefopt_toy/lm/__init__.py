"""The GPT-2 side: the same per-pair losses and online algorithms on a language model.

Models and tokenizer (``models``, ``tokenizer``), completion log-probs with the reduction explicit
(``logprobs``), data in TRL's convention (``data``), judges (``judges``), sampling with KV caches
and the token-level geometric mixture (``sampling``). Submodules import transformers; importing
``prefopt_toy`` itself does not.

References
----------
Munos et al., arXiv:2312.00886v4, App. F.1 (the token-level geometric mixture); Calandriello et
al., arXiv:2403.08635v1 (online IPO, IPO-MD); Rafailov et al., arXiv:2305.18290v3 (DPO).
"""
