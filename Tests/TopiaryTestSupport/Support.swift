import TopiaryIR
