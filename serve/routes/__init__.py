"""The HTTP routes of `aishorts-runner serve`, one `APIRouter` per concern, assembled by `serve.app`.

Responsible for: what each address answers, reaching the server's `JobManager` and settings through FastAPI
dependencies (`serve.routes.deps`), never through closures. Not for: the token, Host and Origin checks, or turning
a refusal into its HTTP answer (`serve.app`, `serve.guard`); what a job does (`serve.jobs`); what a task looks like
(`serve.views`).
"""
