"""Shard leases in a DynamoDB table with KCL's schema: claim, renew, balance, checkpoint."""
