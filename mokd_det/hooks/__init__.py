from .export_student import ExportStudentHook
from .teacher_eval import TeacherEvalHook

__all__ = ['ExportStudentHook', 'TeacherEvalHook']
