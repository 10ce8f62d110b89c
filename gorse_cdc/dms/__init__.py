"""What AWS DMS writes: the Kinesis record envelope and the S3 file layout (shared by all)."""

from gorse_cdc.dms.record import DmsDecodeError, DmsRecord, decode_record, encode_record

__all__ = ["DmsDecodeError", "DmsRecord", "decode_record", "encode_record"]
