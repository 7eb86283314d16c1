"""Few-shot classification: MiniImagenet data, the conv-4 model, MAML and BMG."""
