"""Legacy pickle databases (``DATA_DIR/season_NN.pkl``): read and serve them (``USE_LMDB=false``),
write them, and migrate and validate them into LMDB shards. Removable as a unit: nothing below it
imports it.
"""
