"""The stream contract every producer and consumer shares: the event envelope, the Kinesis
record codec, Lambda's Kinesis batches, instants, bad rows, the retry policy, and the tap
consumer.

Layer: the bottom of ``chalicelib``; pure (no AWS clients, settings or clock).
"""
