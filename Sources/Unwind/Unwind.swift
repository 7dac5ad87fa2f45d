// The DWARF CFI unwinder: see README.md.
