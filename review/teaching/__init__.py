"""Teaching: curated case collections, presentation mode with step-by-step reveal, resident quizzes and
their results. Domain only (no UI): ``collections``, ``material``, ``presentation``, ``quiz``, ``results``."""
