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

    long_text : {"truncate", "chunk"}, default="truncate"
        What to do with documents longer than ``max_length`` tokens:
        ``"truncate"`` keeps their beginning; ``"chunk"`` splits them into
        windows of ``max_length`` tokens that overlap by a quarter, encodes
        each window and pools the windows' pooled vectors into one vector
        per document (their maximum with ``pooling="max"``, else their mean),
        in ``fit``, ``transform`` and ``predict`` alike.

    d_model : int, default=256
        Width of token representations and of the output vectors.

    n_heads : int, default=4
        Attention heads per layer; must divide ``d_model``.

    n_layers : int, default=2
        Number of transformer blocks.

    d_ff : int, default=1024
        Hidden width of each block's feed-forward network.

    activation : {"relu", "gelu"}, default="relu"
        Nonlinearity of the feed-forward networks: the ReLU, or the exact
        (erf) GELU. Their accuracies are alike; the ReLU is the cheaper one
        in bfloat16 inference on the CPU (``benchmarks/README.md``).

    dropout : float, default=0.1
        Dropout on embeddings, residual branches and the classification head.

    pooling : {"mean", "cls", "max"}, default="mean"
        How token states become one vector per document: the mean or the
        maximum over non-padding tokens, or the ``[CLS]`` token's state.

    batch_size : int, default=32
        Documents per optimisation step and per inference batch. Batches hold
        documents of similar length and are padded to their longest one.

    max_epochs : "auto" or int, default="auto"
        Passes over the training data. ``"auto"`` gives
        ``round(80,000 / n_documents)`` epochs, between 2 and 10, for
        ``n_documents`` training documents (windows, when pretraining an
        encoder): 10 up to about 8,000 documents, fewer above, as large
        corpora of short texts overfit within a few epochs. The epochs run
        are in ``n_iter_``.

    learning_rate : float, default=1e-3
        Peak learning rate of AdamW, reached after the warmup.

    weight_decay : float, default=0.01
        Decoupled weight decay on weight matrices (not on biases, LayerNorms
        or embeddings).

    warmup_fraction : float, default=0.1
        Fraction of the optimisation steps during which the learning rate
        rises linearly from zero; it then decays linearly to zero.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified by
        class for classification), score it after each epoch (accuracy,
        weighted as the loss is, by ``sample_weight`` times ``class_weight``;
        the negative masked-language-model loss when pretraining), stop when the score has not improved by more than
        ``tol`` for ``n_iter_no_change`` epochs, and restore the weights of
        the best epoch.

    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping``.

    n_iter_no_change : int, default=3
        Epochs without an improvement larger than ``tol`` (of the validation
        score with ``early_stopping``, of the training loss without) after
        which training stops.

    tol : float, default=1e-4
        Smallest change of the monitored value that counts as improvement.

    warm_start : bool, default=False
        If True and the estimator is fitted, ``fit`` continues training the
        fitted model (keeping its tokenizer) for ``max_epochs`` more epochs,
        with a new learning-rate schedule; ``loss_curve_`` and ``n_iter_``
        keep counting. Changing a parameter that shapes the fitted model
        (``max_length``, ``d_model`` through ``pooling``, a classifier's
        ``ngram_range``) raises ``ValueError``; ``tokenizer``,
        ``vocab_size`` and ``lowercase`` stay those of the first fit.

    checkpoint_dir : str, path or None, default=None
        Directory where model, optimizer, schedule and random state are saved
        after each epoch, in a file named after the run
        (``checkpoint-attentionclassifier.pt``,
        ``checkpoint-attentionencoder-pretraining.pt``...), so that a
        classifier and the encoder it pretrains may share it; created if
        missing. ``partial_fit`` writes no checkpoint: its progress lives in
        the estimator.

    resume : bool, default=False
        If True and ``checkpoint_dir`` holds a checkpoint of the same fit
        (same data and parameters), training continues from it and ends with
        the same model as an uninterrupted fit; a finished checkpoint returns
        its final model at once. A checkpoint of another fit (a ``warm_start``
        fit from other weights included) or a damaged one raises
        ``ValueError``; one the system cannot read, its ``OSError``. With ``early_stopping``, needs an int ``random_state``,
        so that the resumed fit holds out the same validation documents.
        ``partial_fit`` refuses ``resume=True``: its progress lives in the
        estimator.

    device : "auto", str or torch.device, default="auto"
        Where to train and predict: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        ``"auto"`` uses CUDA when available, else the CPU. A fitted model
        is stored on the CPU when pickled and moves to ``device`` as it is
        loaded; where that device is missing, it loads and predicts on the
        CPU (``predict`` warns once).

    precision : {"auto", "fp32", "bf16", "int8"}, default="auto"
        ``"auto"`` uses bfloat16 autocast on CUDA devices that support it and
        on CPUs with native bfloat16 instructions, float32 elsewhere, except
        that on x86 CPUs without native bfloat16 (and not AVX512 without
        VNNI) inference (``predict``, ``predict_proba``,
        ``decision_function``, ``transform``) runs the encoder's linear
        layers in int8. ``"int8"`` trains in float32 and runs inference so
        on the CPU (in float32 on a GPU, or where PyTorch's quantized linear
        layer is missing). int8 inputs are scaled per batch, so outputs move
        slightly with the other documents of a batch. ``explain`` always
        runs in float32. Weights are always kept in float32.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, batch order and masking. An int
        makes fits on the CPU repeatable across processes.

    verbose : "auto" or int, default="auto"
        Progress on stderr. ``"auto"`` shows a progress bar per epoch (loss,
        tokens/s, time left), and one over the documents of a ``predict`` or
        ``transform`` of 10,000 documents or more, when stderr is a terminal
        and the call runs in the main thread of a main process; elsewhere
        (pipes, logs, notebooks, joblib, Dask or Ray workers) it is silent.
        0 is always silent; 1 shows the bars on a terminal (inference bars
        from two chunks of 4,096 documents on), and one line per epoch where
        stderr is not a terminal (logs, CI); 2 and above always print one
        line of metrics per epoch.

    callbacks : list of callable or None, default=None
        Functions called during training as ``callback(event)`` after every
        optimizer step and every epoch, with a :class:`skattn.TrainingEvent`
        (loss, tokens, timing, batch shapes, validation score, the module):
        to log to an experiment tracker, record curves, or stop the fit by
        raising ``KeyboardInterrupt``. They do not change what is learned.
        Like every parameter, they are deep-copied by ``clone`` (as in
        ``GridSearchCV``; a callable object's state is copied, a plain
        function is kept as it is) and pickled with the estimator.
"""

TRAINING_ATTRIBUTES = """\
    vocabulary_ : dict
        Mapping of the tokenizer's tokens to their ids.

    loss_curve_ : list of float
        Mean training loss of each epoch (of all fits, with ``warm_start``
        or ``partial_fit``).

    grad_norm_curve_ : list of float
        Largest gradient norm of each epoch, before clipping to 1 (of all
        fits, like ``loss_curve_``): a curve that climbs instead of falling
        as the loss flattens points at a learning rate too high.

    validation_scores_ : list of float or None
        Validation score after each epoch when ``early_stopping``, else None.
        Continued fits (``warm_start``, ``partial_fit``) keep one score per
        epoch of ``loss_curve_``, NaN for the epochs of fits that did not
        validate.

    best_score_ : float or None
        Best validation score when ``early_stopping``, else None.

    best_loss_ : float
        Lowest training loss of an epoch in the last fit.

    n_iter_ : int
        Number of epochs run.

    n_tokens_seen_ : int
        Number of (non-padding) tokens processed in training.

    fit_time_ : float
        Wall-clock seconds the last call to ``fit`` (or ``partial_fit``)
        took, tokenizer training and pretraining included.

    fit_device_ : str
        The device the last fit trained on, e.g. ``"cpu"`` or ``"cuda:0"``.

    fit_precision_ : {"fp32", "bf16"}
        The precision ``precision`` resolved to for training in the last fit.
"""
