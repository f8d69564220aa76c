from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/api/health")
def health() -> dict[str, str]:
    """Answers without a token: the API process is up."""
    return {"status": "ok"}
