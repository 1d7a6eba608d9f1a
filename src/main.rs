fn main() {
    println!("fpm-doctor: under construction");
}
