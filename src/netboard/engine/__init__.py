"""The reasoning engine: classify, evaluate conditions, assemble the answer."""
