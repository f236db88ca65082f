"""Old home of ``rdispy.programs``, kept importable: a client sends ``run_program`` and
``run_program_collect`` pickled by reference to their module, and results are ``ProgramRun``
objects, so a pickle made by an older rdispy names this path.  New code imports
``rdispy.programs``."""

from rdispy.programs import CreatedFile, ProgramRun, run_program, run_program_collect

__all__ = ["CreatedFile", "ProgramRun", "run_program", "run_program_collect"]
