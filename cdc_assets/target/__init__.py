"""Target side: DDL, COPY in, staging and swap, batch apply with LSN watermark."""
