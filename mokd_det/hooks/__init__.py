from .checkpoint import CrashSafeCheckpointHook
from .export_student import ExportStudentHook
from .mkd_meta import MKDMetaHook
from .mokd_amortized import MoKDAmortizedHook
from .recompute import RecomputeHook
from .teacher_eval import TeacherEvalHook

__all__ = [
    'CrashSafeCheckpointHook', 'ExportStudentHook', 'MKDMetaHook',
    'MoKDAmortizedHook', 'RecomputeHook', 'TeacherEvalHook'
]
