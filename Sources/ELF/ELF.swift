// SprofELF
