//! The in-pipeline decoder learns: on a handful of images its denoising loss falls far below
//! the loss of predicting no noise (1.0, the noise's variance). With tch's default (ReLU-gain) initialisation
//! it stayed at 0.99; with PyTorch's it reaches 0.54 (measured), as diffusers' own UNet does (0.41).

use brainpipe_diffusion::{PredictionType, TrainOptions, train_decoder};
use tch::{Device, Kind, Tensor};

fn options(steps: usize) -> TrainOptions {
    TrainOptions {
        codec_factor: 2,
        channels: vec![16, 32],
        layers_per_block: 1,
        heads: 2,
        steps,
        batch_size: 8,
        learning_rate: 2e-3,
        condition_dropout: 0.1,
        num_train_timesteps: 1000,
        seed: 0,
        prediction_type: PredictionType::Epsilon,
    }
}

#[test]
fn the_denoising_loss_falls_well_below_predicting_no_noise() {
    tch::manual_seed(3);
    // Eight flat-coloured 16×16 images (easy to denoise), each with its own embedding.
    let colours = Tensor::rand([8, 3, 1, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let images = colours.expand([8, 3, 16, 16], false).contiguous();
    let embeddings = Tensor::randn([8, 12], (Kind::Float, Device::Cpu));
    let (_, _, _, report) =
        train_decoder(&images, &embeddings, &options(150), Device::Cpu, |_| {}).expect("train");
    let last = *report.loss_curve.last().expect("a loss curve");
    eprintln!("loss curve {:?}", report.loss_curve);
    assert!(last < 0.7, "the loss stays at {last} (1.0 = predicting no noise): nothing is learnt");
}
