"""The reference server of bench_serve.py: what a user writes in ten lines with sentence-transformers.

    python bench/serve_reference.py MODEL_DIR PORT
"""

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
app = FastAPI()


class Request(BaseModel):
    input: list[str]


@app.post("/v1/embeddings")
def embeddings(request: Request):
    vectors = model.encode(request.input, normalize_embeddings=True)
    return {"data": [{"index": i, "embedding": vector.tolist()} for i, vector in enumerate(vectors)]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="info", access_log=False)
