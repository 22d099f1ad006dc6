"""The whole SurgReview data model as typed SQLAlchemy 2 tables.

Rules that must always hold are constraints here, not hopes in services: unique keys, foreign keys,
check constraints on boxes, ratings and enumerations. Boxes are canonical float pixel corners of the
original frame (x1 < x2, y1 < y2). Later issues fill the workflows; every table exists from the start.
"""

from db.schema.base import (
    ANNOTATION_STATUSES,
    ITEM_STATES,
    LEVEL_MARKS,
    NAMING,
    REVEAL_POLICIES,
    ROLES,
    RUN_STATUSES,
    SPLITS,
    STUDY_STATUSES,
    TASKS,
    Base,
    BoxColumns,
    RationaleColumns,
    utcnow,
)
from db.schema.cases import Case, CaseTag, Frame, Label
from db.schema.people import User, UserRole
from db.schema.records import AuditEvent, Export
from db.schema.review import (
    Judgment,
    OutputRating,
    ReviewItem,
    Study,
    StudyCase,
    StudyModel,
    StudyReviewer,
    VoteTally,
)
from db.schema.runs import Model, Prediction, Run
from db.schema.work import Annotation, AnnotationAssignment, Collection, CollectionItem, QuizAttempt

__all__ = [
    "ROLES",
    "SPLITS",
    "TASKS",
    "RUN_STATUSES",
    "STUDY_STATUSES",
    "REVEAL_POLICIES",
    "LEVEL_MARKS",
    "ANNOTATION_STATUSES",
    "ITEM_STATES",
    "NAMING",
    "utcnow",
    "Base",
    "BoxColumns",
    "RationaleColumns",
    "User",
    "UserRole",
    "Frame",
    "Case",
    "CaseTag",
    "Label",
    "Model",
    "Run",
    "Prediction",
    "Study",
    "StudyModel",
    "StudyReviewer",
    "StudyCase",
    "ReviewItem",
    "Judgment",
    "OutputRating",
    "VoteTally",
    "AnnotationAssignment",
    "Annotation",
    "Collection",
    "CollectionItem",
    "QuizAttempt",
    "AuditEvent",
    "Export",
]
