"""Where events come from: decoding, the Firehose archive reader, the Kinesis source."""
