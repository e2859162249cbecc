from .checkpoint import CrashSafeCheckpointHook
from .export_student import ExportStudentHook
from .fault_injection import FaultInjectionHook
from .mkd_meta import MKDMetaHook
from .mokd_amortized import MoKDAmortizedHook
from .recompute import RecomputeHook
from .teacher_eval import TeacherEvalHook

__all__ = [
    'CrashSafeCheckpointHook', 'ExportStudentHook', 'FaultInjectionHook',
    'MKDMetaHook', 'MoKDAmortizedHook', 'RecomputeHook', 'TeacherEvalHook'
]
