import ArrowCompression
import ArrowIPC

/// `CompressionBenchmark --sizes TABLE.arrows`: each buffer of the first batch with its compressed sizes.
enum BufferSizes {
    static func print(_ batch: RecordBatch) {
        for (field, column) in zip(batch.schema.fields, batch.columns) {
            for (index, buffer) in column.buffers.enumerated() where buffer.count > 0 {
                Swift.print(field.name, index, buffer.count, Zstd.compress(buffer.bytes).count,
                            LZ4Frame.compress(buffer.bytes).count)
            }
        }
    }
}
