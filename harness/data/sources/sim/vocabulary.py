"""SIM3's fixed topic vocabulary and query templates.

The paper paraphrased ten TREC-DL22 topics with GPT-4; we have neither the model nor its outputs, so each
topic here is a hand-written list of twelve words on one web-search theme, and a query is a template
filled with three of its topic's words. Changing anything here changes every SIM3 dataset's fingerprint.
"""

from __future__ import annotations

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("coffee", ("coffee", "caffeine", "espresso", "roast", "beans", "brewing", "arabica", "grinder",
                "acidity", "barista", "decaf", "aroma")),
    ("volcanoes", ("volcano", "eruption", "magma", "lava", "crater", "ash", "tectonic", "seismic",
                   "pyroclastic", "caldera", "basalt", "vent")),
    ("diabetes", ("diabetes", "insulin", "glucose", "pancreas", "blood", "sugar", "glycemic", "metformin",
                  "obesity", "diet", "hyperglycemia", "carbohydrates")),
    ("roman empire", ("roman", "empire", "caesar", "senate", "legion", "augustus", "gladiator", "aqueduct",
                      "republic", "colosseum", "constantinople", "emperor")),
    ("solar power", ("solar", "panel", "photovoltaic", "inverter", "sunlight", "renewable", "battery",
                     "grid", "silicon", "rooftop", "kilowatt", "efficiency")),
    ("mortgages", ("mortgage", "interest", "loan", "refinance", "lender", "escrow", "principal", "rate",
                   "credit", "downpayment", "amortization", "closing")),
    ("dog training", ("puppy", "dog", "leash", "obedience", "treats", "crate", "barking", "training",
                      "breed", "veterinarian", "housebreaking", "commands")),
    ("cell biology", ("cell", "mitochondria", "membrane", "nucleus", "ribosome", "protein", "enzyme",
                      "atp", "organelle", "respiration", "cytoplasm", "dna")),
    ("jazz", ("jazz", "saxophone", "improvisation", "swing", "bebop", "trumpet", "blues", "harlem",
              "ellington", "rhythm", "chord", "ensemble")),
    ("glaciers", ("glacier", "melting", "climate", "warming", "sea", "ice", "arctic", "carbon", "emissions",
                  "temperature", "greenland", "permafrost")),
)

# Question shapes common to web queries; every template takes three topic words.
TEMPLATES: tuple[str, ...] = (
    "what is {0} {1} {2}",
    "how does {0} affect {1} and {2}",
    "{0} {1} {2}",
    "why do {0} and {1} matter for {2}",
    "history of {0} {1} {2}",
    "best guide to {0} {1} {2}",
    "difference between {0} and {1} {2}",
    "how to explain {0} {1} {2}",
)

WORDS_PER_QUERY = 3
WORDS_PER_ITEM = 6
