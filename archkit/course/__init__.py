"""The course notes' demos: the primitives of a convolution drawn step by step, and the training run."""
