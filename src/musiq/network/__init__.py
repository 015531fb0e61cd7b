"""The network and its checkpoints: sizes (:mod:`.architecture`), the torch module
(:mod:`.model`), official ``.npz`` files (:mod:`.checkpoint`, :mod:`.registry`,
:mod:`.locate`, :mod:`.download`), :func:`~.factory.create_model`, and what the head's
logits mean (:mod:`.outputs`, :mod:`.imagenet`)."""
