// Times Topiary's ONNX load and save for bench/io_bench.py: prints one JSON line of seconds.
// Usage: topiary-bench io MODEL OUT REPEATS
import Foundation
import TopiaryIR

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

let args = CommandLine.arguments
guard args.count == 5, args[1] == "io", let repeats = Int(args[4]) else {
    FileHandle.standardError.write(Data("usage: topiary-bench io MODEL OUT REPEATS\n".utf8))
    exit(2)
}
var loads: [Double] = []
var saves: [Double] = []
for _ in 0..<repeats {
    var model: Model?
    loads.append(try seconds { model = try ModelFile.load(args[2], validate: false) })
    if let model { saves.append(try seconds { try ModelFile.save(model, to: args[3], externalData: .inline) }) }
}
let json = try JSONSerialization.data(withJSONObject: ["load": loads, "save": saves])
print(String(decoding: json, as: UTF8.self))
