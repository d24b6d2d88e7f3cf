import ArgumentParser
import TopiaryIR

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Rewrite a model: fold BatchNormalization into convolutions, convert to float16, move weights to or from an external data file."
    )

    @Argument(help: "The ONNX model to read (never modified).") var input: String
    @Argument(help: "Where to write the result (written atomically).") var output: String
    @Flag(name: .customLong("fold-bn"), help: "Fold each BatchNormalization that follows a Conv into the Conv.") var foldBN = false
    @Flag(help: "Store weights and activations as float16 (inputs and outputs stay float32).") var fp16 = false
    @Option(name: .customLong("external-data"), help: "Write tensors of at least --size-threshold bytes to FILE, beside OUTPUT.") var externalData: String?
    @Option(name: .customLong("size-threshold"), help: "Smallest tensor, in bytes, moved to the external data file.") var sizeThreshold = 1024
    @Flag(name: .customLong("inline-data"), help: "Store every tensor inside the model file.") var inlineData = false

    func validate() throws {
        if externalData != nil && inlineData { throw ValidationError("choose one of --external-data and --inline-data") }
        if let f = externalData, f.contains("/") { throw ValidationError("--external-data takes a file name; the file goes beside OUTPUT") }
    }

    func run() throws {
        try runReportingErrors {
            let model = try ModelFile.load(input)
            if foldBN {
                let n = try FoldBatchNorm.run(model)
                print("folded \(n) BatchNormalization node(s)")
            }
            if fp16 { try ConvertFloat16.run(model) }
            let policy: ExternalDataPolicy = inlineData ? .inline : externalData.map { .file($0, threshold: sizeThreshold) } ?? .preserve
            try ModelFile.save(model, to: output, externalData: policy)
            print("wrote \(output)")
        }
    }
}
