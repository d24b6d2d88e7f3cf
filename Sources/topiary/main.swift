import TopiaryIR
let m = try ModelFile.load(CommandLine.arguments[1])
print(m.graph.nodes.count, m.graph.initializers.count)
try ModelFile.save(m, to: CommandLine.arguments[2], externalData: .inline)
