"""Reading Kinesis shards: polling (GetRecords) and enhanced fan-out (SubscribeToShard)."""
