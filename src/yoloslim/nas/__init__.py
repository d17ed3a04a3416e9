"""Zero-shot architecture search (MAE-NAS): entropy score, search space, evolutionary search."""

from yoloslim.nas.budget import Budget, Cost, measure_cost
from yoloslim.nas.latency import LatencySettings, measure_latency_ms
from yoloslim.nas.score import DEFAULT_STAGE_WEIGHTS, entropy_score, stage_scores
from yoloslim.nas.search import SearchResult, search, search_from_dict
from yoloslim.nas.space import Genome, SearchSpace, genome_dict, genome_of

__all__ = [
    "DEFAULT_STAGE_WEIGHTS",
    "Budget",
    "Cost",
    "Genome",
    "LatencySettings",
    "SearchResult",
    "SearchSpace",
    "entropy_score",
    "genome_dict",
    "genome_of",
    "measure_cost",
    "measure_latency_ms",
    "search",
    "search_from_dict",
    "stage_scores",
]
