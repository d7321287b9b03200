"""The registry of dataset sources. Each entry is loaded lazily from `module:attr` (a `Source`)."""

from harness.registry import Registry

SOURCES: Registry = Registry("dataset")
SOURCES.register("ml-small", "harness.data.sources.movielens:ML_SMALL", "MovieLens ml-latest-small (GroupLens)")
SOURCES.register("ml-25m", "harness.data.sources.movielens:ML_25M", "MovieLens 25M with genome tags (user-supplied zip)")
SOURCES.register("mpd", "harness.data.sources.mpd:MPD", "Million Playlist Dataset slice files (user-supplied)")
SOURCES.register("sim1", "harness.data.sources.simulations:SIM1", "SIM1 (H1): Zipf popularity, search popularity shuffled")
SOURCES.register("sim2", "harness.data.sources.simulations:SIM2", "SIM2 (H2, S->R): item clusters, % of query match")
SOURCES.register("sim3", "harness.data.sources.simulations:SIM3", "SIM3 (H2, R->S): topical queries, % pairs in qrels")
SOURCES.register("logs", "harness.data.sources.logs:LOGS", "a platform's own logs in the canonical schema (Parquet/CSV)")
