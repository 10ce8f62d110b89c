"""The local DMS for a MySQL-compatible source: a consistent full load at a recorded binlog
position, then CDC from the binlog (mysql-replication) to the same Kinesis and S3 targets."""
