"""Operations on a running pipeline (local stack and AWS): redrive of the batches Lambda gave up on
(``failures``: its on-failure records), replay into search, backfill of final windows, the lake migration."""
