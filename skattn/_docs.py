"""Parameter documentation shared by the public estimators' docstrings."""

SHARED_PARAMETERS = """\
    tokenizer : {"wordpiece", "bpe", "unigram"}, default="wordpiece"
        Subword model trained on the training texts in ``fit``.

    vocab_size : int, default=8000
        Maximum vocabulary size of the trained tokenizer, special tokens
        included. The actual size is ``config_.vocab_size``.

    lowercase : bool, default=True
        Lowercase texts before tokenization. Texts are always NFKC-normalized;
        Han and kana characters are split into single characters.

    max_length : int, default=256
        Documents are truncated to this many tokens, ``[CLS]`` and ``[SEP]``
        included. It is also the number of learned positions.

    d_model : int, default=256
        Width of token representations and of the output vectors.

    n_heads : int, default=4
        Attention heads per layer; must divide ``d_model``.

    n_layers : int, default=2
        Number of transformer blocks.

    d_ff : int, default=1024
        Hidden width of each block's feed-forward network.

    dropout : float, default=0.1
        Dropout on embeddings, residual branches and the classification head.

    pooling : {"mean", "cls", "max"}, default="mean"
        How token states become one vector per document: the mean or the
        maximum over non-padding tokens, or the ``[CLS]`` token's state.

    batch_size : int, default=32
        Documents per optimisation step and per inference batch. Batches hold
        documents of similar length and are padded to their longest one.

    max_epochs : int, default=10
        Passes over the training data.

    learning_rate : float, default=1e-3
        Peak learning rate of AdamW, reached after the warmup.

    weight_decay : float, default=0.01
        Decoupled weight decay on weight matrices (not on biases, LayerNorms
        or embeddings).

    warmup_fraction : float, default=0.1
        Fraction of the optimisation steps during which the learning rate
        rises linearly from zero; it then decays linearly to zero.

    device : "auto", str or torch.device, default="auto"
        Where to train and predict. ``"auto"`` uses CUDA when available, else
        the CPU. A fitted model is stored on the CPU when pickled and moves to
        ``device`` on first use.

    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"auto"`` uses bfloat16 autocast on CUDA devices that support it and
        on CPUs with native bfloat16 instructions, float32 elsewhere. Weights
        are always kept in float32.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, batch order and masking. An int
        makes fits on the CPU repeatable across processes.

    verbose : int, default=0
        Print one line per epoch to stderr when positive.
"""
