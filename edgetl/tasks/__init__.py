"""Tasks: everything that knows what a model's inputs are (images today; text next).

A task registry entry owns data indexing and reading, augmentation, example and benchmark inputs and their names,
the preprocessing spec, the bundle README's snippets and how ``edgetl predict`` reads its inputs. Outside a task's
own module nothing assumes an NCHW image: stages, runtimes and the benchmark pass named inputs
(``dict[str, array]``) described by the model artifact's ``ModelIO``.
"""

from edgetl.tasks.base import TASKS, ResolvedInput, Task, get_task, resolve_input, task_for_backbone

# register the built-in tasks
from edgetl.tasks import image as _image  # noqa: E402,F401  isort: skip
from edgetl.tasks import text as _text  # noqa: E402,F401  isort: skip

__all__ = ["TASKS", "ResolvedInput", "Task", "get_task", "resolve_input", "task_for_backbone"]
