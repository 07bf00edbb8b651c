"""Human labels: which images a person should label next (:mod:`visent.label.suggest`), and Label Studio's tasks
and exports (:mod:`visent.label.studio`)."""

from visent.label.studio import config_path, export_tasks, label_config
from visent.label.suggest import STRATEGIES, Suggestion, Suggestions, suggest, write_csv

__all__ = ["STRATEGIES", "Suggestion", "Suggestions", "config_path", "export_tasks", "label_config", "suggest",
           "write_csv"]
