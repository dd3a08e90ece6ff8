"""Import of the published M2UGen / MuMu-LLaMA `checkpoint.pth` files into MuMu checkpoints.

loading: safe, memory-mapped reading and validation of a published file, and its layout;
keymap: published names -> ours (RoPE permutation of Meta-layout rows included);
compare: does the file's copy of a frozen component equal a given one (by content, whatever the names);
components: the file's own copy of a frozen component that differs, written as a local HF directory;
convert: config building and the conversion itself; hub: the published Hub ids, converted once into a cache.
"""
