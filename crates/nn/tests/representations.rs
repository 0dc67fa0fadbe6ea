//! Representation names: every lookup by an unknown name is one typed error that lists
//! the network's names.

use specreg_nn::{Network, NnError};
use specreg_tensor::{DType, Device, Rng};

#[test]
fn unknown_representation_lists_the_valid_names() {
    let mut rng = Rng::new(0);
    let net = Network::mlp(&mut rng, DType::F32, &Device::Cpu).unwrap();
    match net.hidden_layer_index("fc9") {
        Err(NnError::UnknownRepresentation { name, available }) => {
            assert_eq!(name, "fc9");
            assert_eq!(available, net.hidden_names());
            let message = NnError::UnknownRepresentation { name, available }.to_string();
            assert!(
                message.contains("\"fc9\"") && message.contains("fc1, fc2"),
                "{message}"
            );
        }
        other => panic!("expected UnknownRepresentation, got {other:?}"),
    }
    assert!(net.hidden_layer_index(net.hidden_names()[0]).is_ok());
}
