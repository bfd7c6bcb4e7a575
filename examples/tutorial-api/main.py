"""A deliberately ordinary model API, the way most tutorials write one: FastAPI, the pickled
scikit-learn pipeline loaded at start, a pandas DataFrame built for every request, served by
uvicorn. It is the lab's worked example of measuring someone else's service (README.md)."""

import os
import pickle
from contextlib import asynccontextmanager
from typing import Literal

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field

MODEL_PATH = os.environ.get("MODEL_PATH", "model.pkl")
model = None


@asynccontextmanager
async def lifespan(_app: FastAPI):
    global model
    with open(MODEL_PATH, "rb") as handle:
        model = pickle.load(handle)
    yield


app = FastAPI(title="Penguin species (tutorial)", lifespan=lifespan)


class Penguin(BaseModel):
    island: Literal["Biscoe", "Dream", "Torgersen"]
    culmen_length_mm: float = Field(gt=0)
    culmen_depth_mm: float = Field(gt=0)
    flipper_length_mm: float = Field(gt=0)
    body_mass_g: float = Field(gt=0)
    sex: Literal["MALE", "FEMALE"]


class Prediction(BaseModel):
    species: str
    probability: float


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok" if model is not None else "loading"}


@app.post("/predict")
def predict(penguin: Penguin) -> Prediction:
    frame = pd.DataFrame([penguin.model_dump()])
    probabilities = model.predict_proba(frame)[0]
    best = probabilities.argmax()
    return Prediction(species=str(model.classes_[best]), probability=float(probabilities[best]))
