"""Operations on a running pipeline: redrive of failed batches (local stack and AWS)."""
